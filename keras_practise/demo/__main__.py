from keras_practise.demo.demo import main

main()
